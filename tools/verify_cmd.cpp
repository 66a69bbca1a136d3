#include "commands.hpp"

namespace tdhook::tools {
void setup_verify(CLI::App& app) { app.add_subcommand("verify", "not yet implemented"); }
}  // namespace tdhook::tools
