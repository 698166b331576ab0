## Valeria: read datalake buckets from R with the environment the hub injects.
##
## The hub sets, in every notebook (docs/environment.md):
##   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)  the user's keys
##   AWS_ENDPOINT_URL_S3   https://rgw.example.org        full URL (Python tools)
##   AWS_S3_ENDPOINT       rgw.example.org                bare host[:port] (aws.s3 wants no scheme)
##   AWS_DEFAULT_REGION    region name (Ceph ignores it, signatures need one)
##   AWS_CA_BUNDLE         CA of the RGW certificate, when it is not a public one
##
## Quirks these helpers hide:
##   * aws.s3 builds https:// URLs unless told use_https = FALSE, and does not read the scheme
##     from anywhere: we derive it from AWS_ENDPOINT_URL_S3.
##   * aws.s3 (0.3.x) puts a non-empty region in front of a custom host (us-east-1.rgw.example.org)
##     and checks the bucket's region with an extra request: pass region = "" and
##     check_region = FALSE for Ceph.
##   * arrow ignores AWS_ENDPOINT_URL*: it needs endpoint_override (and scheme) every time.
##   * httr/curl (aws.s3) read CURL_CA_BUNDLE, not AWS_CA_BUNDLE.
##
## Usage:
##   do.call(aws.s3::get_bucket_df, c(list(bucket = "mybucket"), valeria_s3_args()))
##   do.call(aws.s3::s3read_using, c(list(FUN = read.csv, object = "s3://mybucket/a.csv"), valeria_s3_args()))
##   ds <- arrow::open_dataset(valeria_arrow_fs()$path("mybucket/table"))

valeria_s3_endpoint <- function() {
  url <- Sys.getenv("AWS_ENDPOINT_URL_S3", Sys.getenv("AWS_ENDPOINT_URL", ""))
  host <- Sys.getenv("AWS_S3_ENDPOINT", "")
  if (url == "" && host == "") {
    stop("no S3 endpoint in the environment: AWS_ENDPOINT_URL_S3 and AWS_S3_ENDPOINT are unset")
  }
  scheme <- if (url != "") sub("://.*$", "", url) else "https"
  if (host == "") host <- sub("/.*$", "", sub("^[a-z]+://", "", url))
  list(scheme = scheme, host = host, url = paste0(scheme, "://", host))
}

valeria_s3_args <- function() {
  ep <- valeria_s3_endpoint()
  ca <- Sys.getenv("AWS_CA_BUNDLE", "")
  if (ca != "" && Sys.getenv("CURL_CA_BUNDLE", "") == "") Sys.setenv(CURL_CA_BUNDLE = ca)
  list(base_url = ep$host, use_https = identical(ep$scheme, "https"), region = "",
       check_region = FALSE, url_style = "path")
}

valeria_arrow_fs <- function() {
  ep <- valeria_s3_endpoint()
  args <- list(endpoint_override = ep$url, scheme = ep$scheme,
               region = Sys.getenv("AWS_DEFAULT_REGION", "us-east-1"))
  do.call(arrow::S3FileSystem$create, args)
}
