#include "commands.hpp"

namespace tdhook::tools {
void setup_events(CLI::App& app) { app.add_subcommand("events", "not yet implemented"); }
}  // namespace tdhook::tools
