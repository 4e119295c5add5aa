// Typed wrappers for C APIs Swift cannot call directly (variadic functions, macro constants).
// Each wrapper is one line; no logic lives here.
#pragma once
#include <curl/curl.h>
#include <stddef.h>
#include <sys/types.h>

typedef size_t (*cknit_curl_data_cb)(char *_Nonnull ptr, size_t size, size_t nmemb, void *_Nullable userdata);
typedef int (*cknit_curl_progress_cb)(void *_Nullable userdata, curl_off_t dltotal, curl_off_t dlnow,
                                      curl_off_t ultotal, curl_off_t ulnow);

CURLcode cknit_curl_setopt_long(CURL *_Nonnull h, CURLoption opt, long value);
CURLcode cknit_curl_setopt_off(CURL *_Nonnull h, CURLoption opt, curl_off_t value);
CURLcode cknit_curl_setopt_string(CURL *_Nonnull h, CURLoption opt, const char *_Nullable value);
CURLcode cknit_curl_setopt_pointer(CURL *_Nonnull h, CURLoption opt, void *_Nullable value);
CURLcode cknit_curl_setopt_slist(CURL *_Nonnull h, CURLoption opt, struct curl_slist *_Nullable value);
CURLcode cknit_curl_setopt_blob(CURL *_Nonnull h, CURLoption opt, void *_Nonnull data, size_t length);
CURLcode cknit_curl_setopt_write(CURL *_Nonnull h, cknit_curl_data_cb _Nonnull cb, void *_Nullable userdata);
CURLcode cknit_curl_setopt_header(CURL *_Nonnull h, cknit_curl_data_cb _Nonnull cb, void *_Nullable userdata);
CURLcode cknit_curl_setopt_read(CURL *_Nonnull h, cknit_curl_data_cb _Nonnull cb, void *_Nullable userdata);
CURLcode cknit_curl_setopt_progress(CURL *_Nonnull h, cknit_curl_progress_cb _Nonnull cb, void *_Nullable userdata);
CURLcode cknit_curl_setopt_trailer(CURL *_Nonnull h,
                                   int (*_Nonnull cb)(struct curl_slist *_Nullable *_Nonnull list, void *_Nullable userdata),
                                   void *_Nullable userdata);
CURLcode cknit_curl_getinfo_long(CURL *_Nonnull h, CURLINFO info, long *_Nonnull out);
CURLcode cknit_curl_getinfo_off(CURL *_Nonnull h, CURLINFO info, curl_off_t *_Nonnull out);
size_t cknit_curl_readfunc_abort(void);
size_t cknit_curl_readfunc_pause(void);
