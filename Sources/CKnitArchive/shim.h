#pragma once
#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>
#include <zstd.h>
