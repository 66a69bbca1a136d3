// tdhook: verify, sign, send, simulate and inspect Tiledesk webhook notifications.
#include <CLI/CLI.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tdhook: tools for Tiledesk webhooks"};
  app.set_version_flag("--version", "tdhook " TDHOOK_VERSION);
  app.require_subcommand(1);
  tdhook::tools::setup_verify(app);
  tdhook::tools::setup_sign(app);
  tdhook::tools::setup_send(app);
  tdhook::tools::setup_events(app);
  tdhook::tools::setup_sim(app);
  tdhook::tools::setup_spool(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a subcommand's own exit status (1 = rejected, 2 = usage/config)
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2
  }
  return 0;
}
