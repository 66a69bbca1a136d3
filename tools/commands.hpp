#pragma once
// The subcommands of the `tdhook` command line. Each lives in its own file and registers itself
// on the app with setup_<name>(); main.cpp only calls these.
#include <CLI/CLI.hpp>

namespace tdhook::tools {

void setup_verify(CLI::App& app);  // verify_cmd.cpp
void setup_sign(CLI::App& app);    // sign_cmd.cpp
void setup_send(CLI::App& app);    // send_cmd.cpp
void setup_events(CLI::App& app);  // events_cmd.cpp
void setup_sim(CLI::App& app);     // sim_cmd.cpp
void setup_spool(CLI::App& app);   // spool_cmd.cpp

}  // namespace tdhook::tools
