//! Connection collision detection (RFC 4271 section 6.8) for peers we both
//! connect to and accept from ([`crate::PeerMode::Both`]).
//!
//! When two connections to one peer exist and the second one's OPEN
//! arrives, the connection opened by the side with the higher BGP
//! identifier survives; the other ends with Cease / Connection Collision
//! Resolution. An Established connection always wins over a new one.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use tokio::sync::watch;

/// Which connection survives a collision between one we opened and one the
/// peer opened: the one opened by the higher BGP identifier (compared as
/// unsigned 32-bit integers).
pub fn outgoing_wins(local_id: Ipv4Addr, peer_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(peer_id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    OpenSent,
    OpenConfirm(Ipv4Addr),
    Established,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    outgoing: bool,
    stage: Stage,
    lost: watch::Sender<bool>,
}

/// The live connections of one peer.
#[derive(Debug)]
pub(crate) struct Collisions {
    local_id: Ipv4Addr,
    inner: Mutex<(u64, Vec<Entry>)>,
}

/// One connection's registration; its receiver fires if another
/// connection wins.
pub(crate) struct Registration {
    pub id: u64,
    pub lost: watch::Receiver<bool>,
}

impl Collisions {
    pub(crate) fn new(local_id: Ipv4Addr) -> Self {
        Collisions {
            local_id,
            inner: Mutex::new((0, Vec::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Entry>)> {
        // Entries are replaced whole; a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection (TCP up, our OPEN about to go out).
    pub(crate) fn register(&self, outgoing: bool) -> Registration {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        let (lost, rx) = watch::channel(false);
        g.1.push(Entry {
            id,
            outgoing,
            stage: Stage::OpenSent,
            lost,
        });
        Registration { id, lost: rx }
    }

    /// The peer's OPEN arrived on connection `id`. Returns false when this
    /// connection lost and must close; otherwise any connection it beats is
    /// told to close.
    pub(crate) fn open_received(&self, id: u64, peer_id: Ipv4Addr) -> bool {
        let mut g = self.lock();
        let Some(this_outgoing) = g.1.iter().find(|e| e.id == id).map(|e| e.outgoing) else {
            return false;
        };
        let keep_outgoing = outgoing_wins(self.local_id, peer_id);
        for other in g.1.iter().filter(|e| e.id != id) {
            match other.stage {
                Stage::Established => return false,
                Stage::OpenConfirm(_) => {
                    if this_outgoing != keep_outgoing {
                        return false;
                    }
                    other.lost.send_replace(true);
                }
                // No OPEN from the peer there yet: it is resolved when that OPEN comes.
                Stage::OpenSent => {}
            }
        }
        if let Some(e) = g.1.iter_mut().find(|e| e.id == id) {
            e.stage = Stage::OpenConfirm(peer_id);
        }
        true
    }

    /// Connection `id` reached Established.
    pub(crate) fn established(&self, id: u64) {
        if let Some(e) = self.lock().1.iter_mut().find(|e| e.id == id) {
            e.stage = Stage::Established;
        }
    }

    /// Connection `id` is gone.
    pub(crate) fn unregister(&self, id: u64) {
        self.lock().1.retain(|e| e.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const HIGH: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn higher_identifier_keeps_its_own_connection() {
        assert!(outgoing_wins(HIGH, LOW));
        assert!(!outgoing_wins(LOW, HIGH));
        // Compared as numbers, not text: 9.x < 10.x.
        assert!(outgoing_wins(
            Ipv4Addr::new(10, 0, 0, 0),
            Ipv4Addr::new(9, 255, 255, 255)
        ));
    }

    #[test]
    fn second_open_resolves_the_collision() {
        // We have the higher id: our outgoing connection survives.
        let c = Collisions::new(HIGH);
        let out = c.register(true);
        let inc = c.register(false);
        assert!(
            c.open_received(inc.id, LOW),
            "first OPEN: nothing to collide with yet"
        );
        assert!(c.open_received(out.id, LOW), "outgoing wins");
        assert!(*inc.lost.borrow(), "incoming told to close");
        assert!(!*out.lost.borrow());

        // We have the lower id: the peer's connection survives.
        let c = Collisions::new(LOW);
        let out = c.register(true);
        let inc = c.register(false);
        assert!(c.open_received(inc.id, HIGH));
        assert!(!c.open_received(out.id, HIGH), "outgoing loses");
        assert!(!*inc.lost.borrow());
    }

    #[test]
    fn established_connection_always_wins() {
        let c = Collisions::new(HIGH);
        let inc = c.register(false);
        assert!(c.open_received(inc.id, LOW));
        c.established(inc.id);
        let out = c.register(true);
        assert!(
            !c.open_received(out.id, LOW),
            "a new connection never replaces an established one"
        );
        c.unregister(inc.id);
        let out2 = c.register(true);
        assert!(c.open_received(out2.id, LOW), "alone again");
    }
}
