//! Views print; they decide nothing. Everything here turns data into text.

mod error;
mod history;
mod markdown;
mod plan;
mod progress;

pub use error::render_error;
pub use history::{render_history, render_history_json};
pub use markdown::render_plan_markdown;
pub use plan::{Base, render_cost, render_plan_human, render_plan_human_against, render_plan_json};
pub use progress::Terminal;

use anstyle::{AnsiColor, Style};

/// How output is styled.
#[derive(Debug, Clone, Copy)]
pub struct Styles {
    /// Whether to emit ANSI colour.
    pub color: bool,
}

impl Styles {
    /// Decide once: colour only on a TTY, never with `NO_COLOR` set or `--no-color`.
    pub fn detect(no_color_flag: bool, is_tty: bool) -> Self {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Styles {
            color: is_tty && !no_color_flag && !no_color_env,
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }

    pub(crate) fn green(&self, t: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), t)
    }
    pub(crate) fn red(&self, t: &str) -> String {
        self.paint(AnsiColor::Red.on_default(), t)
    }
    pub(crate) fn yellow(&self, t: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), t)
    }
    pub(crate) fn cyan(&self, t: &str) -> String {
        self.paint(AnsiColor::Cyan.on_default(), t)
    }
    pub(crate) fn bold(&self, t: &str) -> String {
        self.paint(Style::new().bold(), t)
    }
    pub(crate) fn dim(&self, t: &str) -> String {
        self.paint(Style::new().dimmed(), t)
    }
}
