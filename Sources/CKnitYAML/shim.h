#pragma once
#include <stdio.h>
#include <yaml.h>
