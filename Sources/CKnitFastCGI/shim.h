#pragma once
#include <stdio.h>
#include <fcgiapp.h>
