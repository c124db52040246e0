// Planted violations for tests/layering/test_layering_checker.cmake (never compiled).
#pragma once

#include "fundus/core/error.h"
#include "fundus/store/case_store.h"
