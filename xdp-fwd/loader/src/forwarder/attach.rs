//! Attaching to interfaces (driver or generic mode, pinned links for hot
//! restart), the device map of egress interfaces, and the pass-all program.
use std::{ffi::CString, path::PathBuf};

use aya::{
    maps::DevMapHash,
    programs::{
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
        XdpMode,
    },
    Ebpf, EbpfLoader,
};
use xdp_fwd_common::map_name;

use super::{load_program, pins, xdp_program, Forwarder};
use crate::{Error, Result, PASS_PROGRAM_NAME, PROGRAM_NAME, PROGRAM_OBJECT};

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP: the production mode.
    Driver,
    /// Generic (SKB) XDP, for development on NICs without driver support.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// How an attachment is held.
#[derive(Debug)]
pub(super) struct Attachment {
    /// The link owned by this process's program object, if any.
    pub(super) link: Option<XdpLinkId>,
    /// Pinned link path (hot restart keeps the program attached).
    pub(super) pin: Option<PathBuf>,
}

impl Forwarder {
    /// Attaches the forwarder to `interface` and allows redirects to it.
    ///
    /// With a pin directory the link is pinned there; if a previous process
    /// left one for this interface, the new program replaces the old one
    /// atomically in that link (no packet sees no program).
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<()> {
        let ifindex = if_index(interface)?;
        let pin = self
            .options
            .pin_dir
            .as_ref()
            .map(|d| pins::link_pin(d, interface));
        let prog = xdp_program(&mut self.ebpf, PROGRAM_NAME)?;
        let attachment = match pin {
            Some(path) if path.exists() => {
                let fd_link: FdLink = PinnedLink::from_pin(&path)?.into();
                let link = XdpLink::try_from(fd_link)?;
                let id = prog.attach_to_link(link)?;
                Attachment {
                    link: Some(id),
                    pin: Some(path),
                }
            }
            Some(path) => {
                let id = prog.attach_to_if_index(ifindex, mode.xdp_mode())?;
                let link = prog.take_link(id)?;
                let fd_link = FdLink::try_from(link)?;
                // Dropping the returned handle closes our fd; the pin keeps
                // the program attached.
                fd_link.pin(&path)?;
                Attachment {
                    link: None,
                    pin: Some(path),
                }
            }
            None => {
                let id = prog.attach_to_if_index(ifindex, mode.xdp_mode())?;
                Attachment {
                    link: Some(id),
                    pin: None,
                }
            }
        };
        self.attachments.insert(interface.to_string(), attachment);
        self.add_tx_port(interface)
    }

    /// Detaches from `interface` (and removes its pinned link).
    pub fn detach(&mut self, interface: &str) -> Result<()> {
        let pinned = self
            .options
            .pin_dir
            .as_ref()
            .map(|d| pins::link_pin(d, interface));
        let (link, pin) = match self.attachments.remove(interface) {
            Some(a) => (a.link, a.pin),
            None => (None, None),
        };
        let prog = xdp_program(&mut self.ebpf, PROGRAM_NAME)?;
        if let Some(id) = link {
            prog.detach(id)?;
        }
        // A link pinned by an earlier process is detached too.
        if let Some(path) = pin.or(pinned) {
            if path.exists() {
                // Unpinning drops the last reference: the program detaches.
                let link = PinnedLink::from_pin(&path)?;
                link.unpin()
                    .map_err(|e| Error::Io(format!("unpinning {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    /// Lets the program redirect (XDP_REDIRECT) to `interface`.
    pub fn add_tx_port(&mut self, interface: &str) -> Result<()> {
        let ifindex = if_index(interface)?;
        let mut ports = DevMapHash::try_from(self.map_mut(map_name::TX_PORTS)?)?;
        ports.insert(ifindex, ifindex, None, 0)?;
        Ok(())
    }
}

/// A loaded XDP_PASS program with minimal maps, for the peer end of a veth
/// the forwarder transmits on (driver-mode XDP_TX/REDIRECT frames are only
/// delivered to a veth whose peer has an XDP program).
pub struct PassProgram {
    ebpf: Ebpf,
}

impl PassProgram {
    /// Loads the pass program (the object's maps are created at size 1).
    pub fn load() -> Result<Self> {
        let mut loader = EbpfLoader::new();
        for name in [
            map_name::VIPS,
            map_name::VIP_ADDRS,
            map_name::VIP_EPOCHS,
            map_name::VIP_STATS,
            map_name::RING,
            map_name::BACKENDS,
            map_name::BACKEND_STATS,
            map_name::CONN_CACHE,
            map_name::CONN_PREV,
            map_name::NEXT_HOPS,
        ] {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
        load_program(&mut ebpf, PASS_PROGRAM_NAME)?;
        Ok(Self { ebpf })
    }

    /// Attaches to `interface` (of the calling thread's namespace) until dropped.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<()> {
        let ifindex = if_index(interface)?;
        xdp_program(&mut self.ebpf, PASS_PROGRAM_NAME)?
            .attach_to_if_index(ifindex, mode.xdp_mode())?;
        Ok(())
    }
}

fn if_index(interface: &str) -> Result<u32> {
    let name =
        CString::new(interface).map_err(|_| Error::UnknownInterface(interface.to_string()))?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(Error::UnknownInterface(interface.to_string()));
    }
    Ok(index)
}
