#include "commands.hpp"

namespace tdhook::tools {
void setup_sim(CLI::App& app) { app.add_subcommand("sim", "not yet implemented"); }
}  // namespace tdhook::tools
