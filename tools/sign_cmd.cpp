#include "commands.hpp"

namespace tdhook::tools {
void setup_sign(CLI::App& app) { app.add_subcommand("sign", "not yet implemented"); }
}  // namespace tdhook::tools
