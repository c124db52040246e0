// Planted violation for tests/layering/test_layering_checker.cmake (never compiled).
#include <torch/torch.h>

#include "fundus/eval/metrics.h"
