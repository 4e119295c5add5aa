#pragma once
#include <stdio.h>
#include <fcgiapp.h>
// The server's own connection dispatch (idle kept connections wait in an epoll set, not on a thread).
#include <sys/epoll.h>
#include <sys/eventfd.h>
