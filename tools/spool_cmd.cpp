#include "commands.hpp"

namespace tdhook::tools {
void setup_spool(CLI::App& app) { app.add_subcommand("spool", "not yet implemented"); }
}  // namespace tdhook::tools
