#include "commands.hpp"

namespace tdhook::tools {
void setup_send(CLI::App& app) { app.add_subcommand("send", "not yet implemented"); }
}  // namespace tdhook::tools
