// GCC 12 at -O2 reports a potential null dereference inside CLI11 2.1's inlined string
// splitting (a false positive in the library's header, not in this file).
#pragma GCC diagnostic ignored "-Wnull-dereference"

// `tdhook events`: the bundled sample events, one line each (descriptions from reference §4).
#include <algorithm>
#include <iostream>
#include <string_view>
#include <utility>

#include "commands.hpp"
#include "samples.hpp"

namespace tdhook::tools {
namespace {

struct Described {
  std::string_view prefix;  // an exact name, or a prefix ending in '.'
  std::string_view text;
};

// Longest match wins, so exact names come before their families.
constexpr Described kDescriptions[] = {
    {"request.create", "a conversation was created (populated request)"},
    {"request.update", "a conversation changed: status, participants, tags, attributes, ..."},
    {"request.close", "a conversation was closed; the payload carries all its messages"},
    {"message.create", "a message was stored (visitor, agent, bot or system), with its request"},
    {"message.create.channel.",
     "a message whose own channel is <ch> (also direct and group chats)"},
    {"message.create.request.channel.", "a message of a conversation whose channel is <ch>"},
    {"lead.create", "a new lead (contact) was created"},
    {"project_user.update", "a team member changed: availability, status, role, attributes"},
    {"project_user.update.agent", "an agent (roleType 1) changed; same payload"},
    {"project_user.invite", "a user was invited to the project"},
    {"project_user.delete", "a user was removed from the project"},
    {"operator.select",
     "synchronous routing hook: the JSON answer can replace the chosen operators"},
    {"department.create", "a department was created"},
    {"department.update", "a department was changed"},
    {"department.delete", "a department was deleted"},
    {"group.create", "a group of agents was created"},
    {"group.update", "a group of agents was changed"},
    {"group.delete", "a group of agents was deleted"},
    {"faq.create", "a chatbot intent was created"},
    {"faq.update", "a chatbot intent was changed"},
    {"faq.delete", "a chatbot intent was deleted"},
    {"faqbot.create", "a chatbot was created (the payload includes the bot's secret)"},
    {"faqbot.update", "a chatbot was changed"},
    {"faqbot.delete", "a chatbot was deleted"},
    {"event.emit", "a custom or internal event (typing.start, anything POSTed to /events)"},
    {"event.emit.", "the same event under its own name, e.g. event.emit.typing.start"},
    {"user.signup", "a user signed up (global subscriptions only; carries the password hash)"},
    {"project.create", "a project was created (global subscriptions only)"},
    {"project.update", "a project's settings or plan changed"},
    {"project.downgrade", "a project's plan was downgraded"},
    {"project.delete", "a project was deleted"},
};

std::string_view describe(std::string_view event) {
  std::string_view best;
  std::size_t best_len = 0;
  for (const auto& d : kDescriptions) {
    const bool family = d.prefix.ends_with('.');
    const bool match = family ? event.starts_with(d.prefix) : event == d.prefix;
    if (match && d.prefix.size() > best_len) {
      best = d.text;
      best_len = d.prefix.size();
    }
  }
  return best.empty() ? std::string_view("(no description)") : best;
}

}  // namespace

int run_events() {
  const auto names = sample_names();
  if (names.empty()) {
    std::cerr << "tdhook events: no bundled samples found (set TDHOOK_SAMPLES_DIR to "
                 "samples/events)\n";
    return 2;
  }
  std::size_t width = 0;
  for (const auto& name : names) width = std::max(width, name.size());
  for (const auto& name : names) {
    std::cout << name << std::string(width + 2 - name.size(), ' ') << describe(name) << "\n";
  }
  std::cout.flush();
  return 0;
}

void setup_events(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "events", "List the bundled sample events (for --sample) with a one-line description");
  cmd->callback([] {
    if (const int code = run_events(); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace tdhook::tools
