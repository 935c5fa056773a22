#include "tinyseek/infer/load.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "tinyseek/data/tokenizer_json.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/train/run_config.h"

namespace tinyseek::infer {

LoadedCheckpoint load_checkpoint(const std::string& path) {
  LoadedCheckpoint c;
  c.dir = io::resolve_checkpoint_dir(path);
  const nlohmann::json j = io::read_json_file(c.dir + "/config.json", "checkpoint config");
  const train::RunConfig rc = train::parse_run_config(j, {}, c.dir + "/config.json");
  c.model = std::make_unique<model::Model>(rc.model);
  io::load_model_safetensors(c.model->registry(), c.dir + "/model.safetensors");
  if (std::filesystem::exists(c.dir + "/tokenizer.json")) c.tokenizer = data::read_tokenizer_json(c.dir + "/tokenizer.json");
  return c;
}

}  // namespace tinyseek::infer
