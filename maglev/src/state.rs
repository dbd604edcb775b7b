//! A backend's administrative state: [`BackendState`].

/// Whether a backend takes new flows, keeps its existing ones, or neither.
///
/// Only [`Active`](BackendState::Active) backends get slots of a table: a
/// Maglev table only decides where *new* flows go. A
/// [`Draining`](BackendState::Draining) backend's established flows keep
/// reaching it through the data plane's connection table (which the
/// forwarder consults before the Maglev table), so it can finish them; a
/// [`Down`](BackendState::Down) backend's connection-table entries must not be
/// honoured, so its flows are re-hashed onto the table. Both keep their index
/// in [`Table::backends`](crate::Table::backends), so putting a backend in
/// either state renumbers no other backend.
///
/// The state is part of [`Table::fingerprint`](crate::Table::fingerprint) as
/// the byte [`code`](Self::code): nodes that disagree on a state disagree on
/// the fingerprint, even though both states give the same slots.
///
/// With the `serde` feature it is also the administrative state the
/// consensus crate replicates; its serde form (unit variants by index in
/// bincode, by name elsewhere) is pinned by that crate's golden vectors, so
/// the variants keep their order and names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BackendState {
    /// Takes new flows in proportion to its weight, and keeps its existing ones.
    #[default]
    Active,
    /// Takes no new flows; its existing flows go on through the connection table.
    Draining,
    /// Takes no flows at all.
    Down,
}

impl BackendState {
    /// True if new flows may be sent to it (it gets slots, if its weight > 0).
    pub const fn takes_new_flows(self) -> bool {
        matches!(self, BackendState::Active)
    }

    /// True if flows already pinned to it in the connection table may stay.
    pub const fn keeps_existing_flows(self) -> bool {
        matches!(self, BackendState::Active | BackendState::Draining)
    }

    /// The byte that stands for the state in the fingerprint (pinned:
    /// `Active` 0, `Draining` 1, `Down` 2).
    pub const fn code(self) -> u8 {
        match self {
            BackendState::Active => 0,
            BackendState::Draining => 1,
            BackendState::Down => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_say_which_flows_they_take() {
        use BackendState::*;
        assert!(Active.takes_new_flows() && Active.keeps_existing_flows());
        assert!(!Draining.takes_new_flows() && Draining.keeps_existing_flows());
        assert!(!Down.takes_new_flows() && !Down.keeps_existing_flows());
        assert_eq!([Active.code(), Draining.code(), Down.code()], [0, 1, 2]);
        assert_eq!(BackendState::default(), Active);
    }
}
