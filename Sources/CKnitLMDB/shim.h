#pragma once
#include <stdio.h>
#include <lmdb.h>
