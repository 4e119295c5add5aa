#include "CKnitShims.h"

CURLcode cknit_curl_setopt_long(CURL *h, CURLoption opt, long value) { return curl_easy_setopt(h, opt, value); }
CURLcode cknit_curl_setopt_off(CURL *h, CURLoption opt, curl_off_t value) { return curl_easy_setopt(h, opt, value); }
CURLcode cknit_curl_setopt_string(CURL *h, CURLoption opt, const char *value) { return curl_easy_setopt(h, opt, value); }
CURLcode cknit_curl_setopt_pointer(CURL *h, CURLoption opt, void *value) { return curl_easy_setopt(h, opt, value); }
CURLcode cknit_curl_setopt_slist(CURL *h, CURLoption opt, struct curl_slist *value) { return curl_easy_setopt(h, opt, value); }
CURLcode cknit_curl_setopt_blob(CURL *h, CURLoption opt, void *data, size_t length) {
    struct curl_blob blob = {.data = data, .len = length, .flags = CURL_BLOB_COPY};
    return curl_easy_setopt(h, opt, &blob);
}
CURLcode cknit_curl_setopt_write(CURL *h, cknit_curl_data_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_WRITEDATA, userdata);
}
CURLcode cknit_curl_setopt_header(CURL *h, cknit_curl_data_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_HEADERDATA, userdata);
}
CURLcode cknit_curl_setopt_read(CURL *h, cknit_curl_data_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_READFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_READDATA, userdata);
}
CURLcode cknit_curl_setopt_progress(CURL *h, cknit_curl_progress_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb);
    if (rc != CURLE_OK) return rc;
    rc = curl_easy_setopt(h, CURLOPT_XFERINFODATA, userdata);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
}
CURLcode cknit_curl_setopt_trailer(CURL *h, int (*cb)(struct curl_slist **list, void *userdata), void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_TRAILERFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_TRAILERDATA, userdata);
}
CURLcode cknit_curl_getinfo_long(CURL *h, CURLINFO info, long *out) { return curl_easy_getinfo(h, info, out); }
CURLcode cknit_curl_getinfo_off(CURL *h, CURLINFO info, curl_off_t *out) { return curl_easy_getinfo(h, info, out); }
size_t cknit_curl_readfunc_abort(void) { return CURL_READFUNC_ABORT; }
size_t cknit_curl_readfunc_pause(void) { return CURL_READFUNC_PAUSE; }
