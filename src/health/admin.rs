//! Text form of [`AdminState`] for the state file, the status API and logs.

use super::AdminState;

impl AdminState {
    /// `obey`, `up`, `down` or `drain`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Obey => "obey",
            AdminState::Up => "up",
            AdminState::Down => "down",
            AdminState::Drain => "drain",
        }
    }

    /// Parse the text form; `None` for anything else.
    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "obey" => Some(AdminState::Obey),
            "up" => Some(AdminState::Up),
            "down" => Some(AdminState::Down),
            "drain" => Some(AdminState::Drain),
            _ => None,
        }
    }
}
