#pragma once
// Everything libtdhook offers, in one include.
#include "tdhook/algorithm.hpp"
#include "tdhook/event.hpp"
#include "tdhook/models.hpp"
#include "tdhook/pattern.hpp"
#include "tdhook/result.hpp"
#include "tdhook/sign.hpp"
#include "tdhook/token.hpp"
#include "tdhook/verify.hpp"
