// A Keycloak realm stand-in for the local platform: the certified `oidc-provider` served under
// /realms/<realm> with Keycloak's endpoint paths, a username/password login form, auto-granted
// consent, refresh tokens, JWT access tokens (so Vault's JWT auth can verify them against the JWKS)
// that Keycloak-style userinfo also accepts, and admin hooks for tests.
//
// Usage: node keycloak_realm.mjs <config.json>   (passwords only ever travel in that file)
// Config: { host, port, realm, users:[{username,password,email,groups,name?}],
//           clients:[{client_id,client_secret,redirect_uris,post_logout_redirect_uris?,audience?}],
//           access_token_ttl, refresh_token_ttl, session_ttl, keys_file, admin_token, cookie_keys,
//           ready_file }
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const realm = config.realm || 'valeria';
const prefix = `/realms/${realm}`;
const protocol = '/protocol/openid-connect';
const resourceId = `urn:valeria:realm:${realm}:api`;
const offeredScopes = ['openid', 'profile', 'email', 'groups', 'offline_access'];

function log(msg, extra = {}) {
  // One JSON line per event; never tokens, passwords or secrets.
  process.stdout.write(`${JSON.stringify({ t: new Date().toISOString(), msg, ...extra })}\n`);
}

// Keycloak's `sub` is a UUID, distinct from the username: derive a stable one per realm and user,
// so that code relying on `sub` == username breaks here as it would against Keycloak.
function subjectOf(username) {
  const h = crypto.createHash('sha256').update(`${realm}/${username}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const usersByName = new Map();
const usersBySub = new Map();
for (const u of config.users || []) {
  const user = { ...u, sub: u.sub || subjectOf(u.username), groups: u.groups || [] };
  usersByName.set(u.username, user);
  usersBySub.set(user.sub, user);
}

function claimsOf(user) {
  return {
    sub: user.sub,
    preferred_username: user.username,
    name: user.name || user.username,
    given_name: user.name || user.username,
    email: user.email,
    email_verified: true,
    groups: user.groups,
  };
}

// ---------- signing keys, kept in the workdir so a restart keeps tokens verifiable ----------
function loadKeys() {
  if (fs.existsSync(config.keys_file)) {
    return JSON.parse(fs.readFileSync(config.keys_file, 'utf8'));
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  jwk.kid = crypto.randomBytes(8).toString('hex');
  jwk.use = 'sig';
  jwk.alg = 'RS256';
  const jwks = { keys: [jwk] };
  const tmp = `${config.keys_file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(jwks), { mode: 0o600 });
  fs.renameSync(tmp, config.keys_file);
  return jwks;
}
const jwks = loadKeys();
const publicJwk = (({ kty, n, e, kid, alg }) => ({ kty, n, e, kid, alg }))(jwks.keys[0]);
const publicKey = crypto.createPublicKey({ key: publicJwk, format: 'jwk' });

// ---------- an in-memory adapter that can also find everything of one account ----------
const stores = new Map();
function storeOf(name) {
  if (!stores.has(name)) stores.set(name, new Map());
  return stores.get(name);
}
class MemoryAdapter {
  constructor(name) {
    this.store = storeOf(name);
  }

  async upsert(id, payload, expiresIn) {
    const exp = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload: structuredClone(payload), exp });
  }

  async find(id) {
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.exp <= Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return structuredClone(entry.payload);
  }

  async #findBy(field, value) {
    for (const [id, entry] of this.store) {
      if (entry.payload[field] === value) return this.find(id);
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    return this.#findBy('userCode', userCode);
  }

  async findByUid(uid) {
    return this.#findBy('uid', uid);
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of this.store) {
      if (entry.payload.grantId === grantId) this.store.delete(id);
    }
  }
}

function revokeAccount(sub) {
  let removed = 0;
  for (const [name, store] of stores) {
    for (const [id, entry] of store) {
      const p = entry.payload;
      const owner = p.accountId ?? p.session?.accountId;
      if (owner === sub && name !== 'Client') {
        store.delete(id);
        removed += 1;
      }
    }
  }
  return removed;
}

// ---------- HTML ----------
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:sans-serif;background:#f0f2f5;margin:0}
.card{max-width:340px;margin:60px auto;background:#fff;padding:28px 32px;border-radius:6px;box-shadow:0 2px 6px rgba(0,0,0,.15)}
h1{font-size:1.3em;font-weight:500;margin:0 0 4px}.realm{color:#666;margin:0 0 18px;font-size:.9em}
label{display:block;font-size:.9em;margin:10px 0 4px}input[type=text],input[type=password]{width:100%;box-sizing:border-box;height:36px;padding:0 8px;border:1px solid #bbb;border-radius:3px}
input[type=submit]{margin-top:18px;width:100%;height:38px;border:0;border-radius:3px;background:#0066cc;color:#fff;font-size:1em;cursor:pointer}
.error{color:#b00020;background:#fdecea;padding:8px;border-radius:3px;font-size:.9em}
</style></head><body><div class="card">${body}</div></body></html>`;
}

function loginPage(action, { username = '', error = '' } = {}) {
  return page(`Sign in to ${realm}`, `
<h1 id="kc-page-title">Sign in to your account</h1><p class="realm">realm ${escapeHtml(realm)} (local Keycloak stand-in)</p>
${error ? `<p class="error" id="input-error">${escapeHtml(error)}</p>` : ''}
<form id="kc-form-login" method="post" action="${escapeHtml(action)}" autocomplete="off">
<label for="username">Username</label><input type="text" id="username" name="username" value="${escapeHtml(username)}" autofocus>
<label for="password">Password</label><input type="password" id="password" name="password">
<input type="submit" id="kc-login" name="login" value="Sign In">
</form>`);
}

// ---------- the provider ----------
// Audience of each client's access tokens (Keycloak: an audience mapper naming the client).
const audienceOf = new Map();

function clientMetadata(c) {
  audienceOf.set(c.client_id, c.audience || c.client_id);
  return {
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris || [],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
  };
}

function makeProvider(issuer) {
  const clients = (config.clients || []).map(clientMetadata);

  const provider = new Provider(issuer, {
    adapter: MemoryAdapter,
    clients,
    jwks,
    cookies: { keys: config.cookie_keys, names: { session: `KC_SESSION_${realm}`, interaction: `KC_INTERACTION_${realm}`, resume: `KC_RESUME_${realm}` } },
    // As Keycloak's default mappers: username and groups come with every token, whatever the scope.
    claims: {
      openid: ['sub', 'preferred_username', 'groups'],
      profile: ['preferred_username', 'name', 'given_name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: offeredScopes,
    // Keycloak puts the profile claims in the ID token even when an access token is issued.
    conformIdTokenClaims: false,
    pkce: { required: () => false },
    routes: {
      authorization: `${protocol}/auth`,
      token: `${protocol}/token`,
      userinfo: `${protocol}/userinfo`,
      jwks: `${protocol}/certs`,
      end_session: `${protocol}/logout`,
      revocation: `${protocol}/revoke`,
      introspection: `${protocol}/token/introspect`,
    },
    ttl: {
      AccessToken: config.access_token_ttl || 300,
      AuthorizationCode: 60,
      IdToken: config.access_token_ttl || 300,
      RefreshToken: config.refresh_token_ttl || 1800,
      Session: config.session_ttl || 36000,
      Grant: config.session_ttl || 36000,
      Interaction: 1800,
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // Keycloak asks for confirmation unless the RP proves who it is with id_token_hint.
        logoutSource: async (ctx, form) => {
          const auto = ctx.oidc.params.id_token_hint
            ? `<script>const f=document.getElementById('op.logoutForm');const i=document.createElement('input');i.type='hidden';i.name='logout';i.value='yes';f.appendChild(i);f.submit();</script>`
            : '';
          ctx.body = page('Logging out', `<h1>Do you want to log out?</h1>${form}
<input type="submit" id="kc-logout" form="op.logoutForm" name="logout" value="Logout">${auto}`);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = page('Logged out', '<h1 id="kc-page-title">You are logged out</h1>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resourceId,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => {
          if (resource !== resourceId) throw new Provider.errors.InvalidTarget();
          return {
            scope: offeredScopes.join(' '),
            audience: audienceOf.get(client.clientId) || client.clientId,
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.access_token_ttl || 300,
          };
        },
      },
    },
    formats: {
      customizers: {
        // Keycloak-shaped access tokens: the user's name, email and groups, `azp`, `typ`.
        jwt: async (_ctx, token, jwt) => {
          const user = usersBySub.get(token.accountId);
          if (user) Object.assign(jwt.payload, claimsOf(user));
          jwt.payload.azp = token.clientId;
          // Keycloak's session id claim; here the grant, so userinfo can tell a revoked session.
          jwt.payload.session_state = token.grantId;
          jwt.payload.typ = 'Bearer';
        },
      },
    },
    interactions: {
      url: async (_ctx, interaction) => `${prefix}/login-actions/authenticate/${interaction.uid}`,
    },
    // Consent is granted automatically, for every scope the client asked for (Keycloak with
    // "consent required" off).
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const existing = await ctx.oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      const requested = String(ctx.oidc.params.scope || 'openid').split(' ').filter((s) => offeredScopes.includes(s));
      grant.addOIDCScope(requested.join(' '));
      grant.addResourceScope(resourceId, requested.join(' '));
      await grant.save();
      return grant;
    },
    findAccount: async (_ctx, sub) => {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: async () => claimsOf(user) };
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>We are sorry...</h1>${Object.entries(out).map(([k, v]) => `<p><b>${escapeHtml(k)}</b>: ${escapeHtml(v)}</p>`).join('')}`);
    },
  });
  provider.proxy = false;
  for (const ev of ['server_error', 'grant.error', 'authorization.error', 'end_session.error', 'userinfo.error', 'revocation.error']) {
    provider.on(ev, (_ctx, err) => log(ev, { error: String(err?.message || err), detail: err?.error_description }));
  }
  provider.on('grant.success', (ctx) => log('token issued', { client: ctx.oidc.client?.clientId, grant: ctx.oidc.params?.grant_type }));
  provider.on('end_session.success', (ctx) => log('logout', { client: ctx.oidc.client?.clientId }));
  provider.on('revocation.success', (ctx) => log('token revoked', { client: ctx.oidc.client?.clientId }));
  return provider;
}

// ---------- small HTTP helpers ----------
async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, body, type = 'application/json') {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

function constantEquals(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

// ---------- handlers outside the provider ----------
async function handleLogin(provider, req, res) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    send(res, 400, page('Error', '<h1>Your login attempt timed out.</h1><p>Login again from the application.</p>'), 'text/html');
    return;
  }
  const action = `${prefix}/login-actions/authenticate/${details.uid}`;
  if (details.prompt.name === 'login') {
    if (req.method === 'GET') {
      send(res, 200, loginPage(action), 'text/html; charset=utf-8');
      return;
    }
    const form = await readForm(req);
    const username = form.get('username') || '';
    const user = usersByName.get(username);
    if (!user || !constantEquals(form.get('password') || '', user.password)) {
      log('login failed', { username });
      send(res, 200, loginPage(action, { username, error: 'Invalid username or password.' }), 'text/html; charset=utf-8');
      return;
    }
    log('login', { username });
    await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
    return;
  }
  // Any other prompt (consent): grant what was asked, as Keycloak does without "consent required".
  const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  const requested = String(details.params.scope || 'openid').split(' ').filter((s) => offeredScopes.includes(s));
  grant.addOIDCScope(requested.join(' '));
  grant.addResourceScope(resourceId, requested.join(' '));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

// RS256 JWT signed by this realm, unexpired, ours: its payload, else null.
function verifyAccessToken(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    if (header.alg !== 'RS256' || header.kid !== publicJwk.kid) return null;
    const ok = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], 'base64url'));
    if (!ok) return null;
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (payload.iss !== currentIssuer || typeof payload.exp !== 'number' || payload.exp <= Date.now() / 1000) return null;
    return payload;
  } catch {
    return null;
  }
}

async function handleUserinfo(req, res) {
  // Keycloak accepts its JWT access tokens at userinfo; oidc-provider refuses audience-bound
  // tokens there, so userinfo is served here from the verified token.
  const auth = req.headers.authorization || '';
  let token = auth.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : '';
  if (!token && req.method === 'POST') token = (await readForm(req)).get('access_token') || '';
  const fail = (desc) => {
    res.setHeader('WWW-Authenticate', `Bearer realm="${realm}", error="invalid_token", error_description="${desc}"`);
    send(res, 401, { error: 'invalid_token', error_description: desc });
  };
  if (!token) {
    fail('Token not provided');
    return;
  }
  const payload = verifyAccessToken(token);
  if (!payload) {
    fail('Token verification failed');
    return;
  }
  const user = usersBySub.get(payload.sub);
  const grant = payload.session_state ? await provider.Grant.find(payload.session_state) : undefined;
  if (!user || !grant || grant.accountId !== payload.sub) {
    fail('Session not active');
    return;
  }
  send(res, 200, claimsOf(user));
}

async function handleAdmin(req, res, url) {
  const auth = req.headers.authorization || '';
  if (!constantEquals(auth, `Bearer ${config.admin_token}`)) {
    send(res, 401, { error: 'unauthorized' });
    return;
  }
  const m = url.pathname.match(/^\/__admin\/revoke\/([^/]+)$/);
  if (req.method === 'POST' && m) {
    const user = usersByName.get(decodeURIComponent(m[1]));
    if (!user) {
      send(res, 404, { error: 'no such user' });
      return;
    }
    const removed = revokeAccount(user.sub);
    log('admin revoked user', { username: user.username, removed });
    send(res, 200, { username: user.username, removed });
    return;
  }
  const recreate = url.pathname.match(/^\/__admin\/recreate\/([^/]+)$/);
  if (req.method === 'POST' && recreate) {
    // a Keycloak admin deletes the account and creates another with the same username: the name is
    // the same, the subject is new (Keycloak's user id), and the old sessions are gone
    const user = usersByName.get(decodeURIComponent(recreate[1]));
    if (!user) {
      send(res, 404, { error: 'no such user' });
      return;
    }
    const removed = revokeAccount(user.sub);
    usersBySub.delete(user.sub);
    user.sub = crypto.randomUUID();
    usersBySub.set(user.sub, user);
    log('admin recreated user', { username: user.username, removed });
    send(res, 200, { username: user.username, sub: user.sub });
    return;
  }
  if (req.method === 'POST' && url.pathname === '/__admin/clients') {
    // register (or replace) a confidential client at run time, e.g. a hub on a test's own port
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const c = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (!c.client_id || !c.client_secret || !Array.isArray(c.redirect_uris)) {
      send(res, 400, { error: 'client_id, client_secret and redirect_uris are required' });
      return;
    }
    await new MemoryAdapter('Client').upsert(c.client_id, clientMetadata(c));
    log('admin registered client', { client: c.client_id });
    send(res, 200, { client_id: c.client_id });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/__admin/health') {
    send(res, 200, { ok: true, issuer: currentIssuer });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/__admin/subjects') {
    send(res, 200, Object.fromEntries([...usersByName].map(([name, u]) => [name, u.sub])));
    return;
  }
  send(res, 404, { error: 'not found' });
}

// ---------- the server ----------
let currentIssuer;
let provider;
let callback;

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  try {
    if (url.pathname.startsWith('/__admin/')) {
      await handleAdmin(req, res, url);
    } else if (url.pathname.startsWith(`${prefix}/login-actions/authenticate/`)) {
      await handleLogin(provider, req, res);
    } else if (url.pathname === `${prefix}${protocol}/userinfo`) {
      await handleUserinfo(req, res);
    } else if (url.pathname === prefix || url.pathname.startsWith(`${prefix}/`)) {
      // mounted like express' app.use(prefix, ...): the provider computes its URLs from originalUrl
      req.originalUrl = req.url;
      req.url = req.url.slice(prefix.length) || '/';
      if (req.url.startsWith('?')) req.url = `/${req.url}`;
      if (req.url === '/' || req.url.startsWith('/?')) {
        send(res, 200, { realm, 'token-service': `${currentIssuer}${protocol}`, 'public_key': null });
      } else {
        callback(req, res);
      }
    } else {
      send(res, 404, { error: 'not found' });
    }
  } catch (err) {
    log('request failed', { path: url.pathname, error: String(err?.message || err) });
    if (!res.headersSent) send(res, 500, { error: 'server_error' });
    else res.end();
  }
});

server.listen(config.port || 0, config.host || '127.0.0.1', () => {
  const { port } = server.address();
  // public_base: the address clients use when a proxy sits in front (benchmarks, outage tests)
  currentIssuer = `${config.public_base || `http://${config.host || '127.0.0.1'}:${port}`}${prefix}`;
  provider = makeProvider(currentIssuer);
  callback = provider.callback();
  if (config.ready_file) {
    const tmp = `${config.ready_file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ port, issuer: currentIssuer, pid: process.pid }));
    fs.renameSync(tmp, config.ready_file);
  }
  log('ready', { issuer: currentIssuer, users: [...usersByName.keys()], clients: (config.clients || []).map((c) => c.client_id), dir: path.dirname(process.argv[2]) });
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
