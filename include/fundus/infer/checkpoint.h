// Training checkpoints: everything needed to continue a run exactly or to use its model.
//
// File: a framed file (magic "FNDCKPT1", version, crc32; written atomically) whose payload holds
//   - meta JSON: resolved run config, next epoch and batch, global step, best-so-far, epoch history,
//     LibTorch version;
//   - the model state_dict in torch.save's zip format (so Python can torch.load the bytes as well);
//   - the optimiser state (LibTorch serialisation), possibly empty for inference-only files.
// A truncated, corrupted or foreign file is rejected with a message naming it.
#pragma once

#include <string>

#include "fundus/core/json.h"
#include "fundus/model/state_dict.h"

namespace fundus {

struct Checkpoint {
  Json meta;                    // see above; meta["config"] is the resolved RunConfig JSON
  StateDict model;              // parameters and buffers by name
  std::string optimizer_state;  // LibTorch OutputArchive bytes ("" = none)
};

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
Checkpoint load_checkpoint(const std::string& path);

}  // namespace fundus
