//! The bgp tests' topology: one router namespace linked to `n`
//! load-balancer namespaces, with the routers the tests run in it. The
//! namespaces, processes and launchers are testbed's; only the addressing
//! plan lives here.

use testbed::routers::{Bird, Frr, GoBgp};
use testbed::{routes, Namespace};

/// One router namespace linked to `n` load-balancer namespaces.
///
/// Link i (1-based): router `r<i>` 10.0.<i>.1/24 + fd00:0:<i>::1/64,
/// load balancer `eth0` 10.0.<i>.2/24 + fd00:0:<i>::2/64.
pub struct Lab {
    pub lbs: Vec<Namespace>,
    pub router: Namespace,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new(n: usize) -> Lab {
        let router = Namespace::unique("r").expect("router namespace");
        for key in [
            "net.ipv4.fib_multipath_hash_policy",
            "net.ipv6.fib_multipath_hash_policy",
            "net.ipv4.ip_forward",
        ] {
            router.sysctl(key, "1").expect("sysctl");
        }
        let mut lbs = Vec::new();
        for i in 1..=n {
            let lb = Namespace::unique(&format!("lb{i}")).expect("lb namespace");
            let rif = format!("r{i}");
            testbed::namespace::veth_pair(&router, &rif, &lb, "eth0").expect("veth");
            router
                .add_address(&rif, &format!("10.0.{i}.1/24"))
                .expect("address");
            router
                .add_address(&rif, &format!("fd00:0:{i}::1/64"))
                .expect("address");
            router.link_up(&rif).expect("link up");
            lb.add_address("eth0", &format!("10.0.{i}.2/24"))
                .expect("address");
            lb.add_address("eth0", &format!("fd00:0:{i}::2/64"))
                .expect("address");
            lb.link_up("eth0").expect("link up");
            lbs.push(lb);
        }
        let dir = tempfile::Builder::new()
            .prefix("edgelb-bgp-lab")
            .tempdir()
            .expect("tempdir");
        Lab { lbs, router, dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }

    /// Routes for `prefix` in the router's kernel table (`ip route show`).
    pub fn kernel_route(&self, prefix: &str) -> String {
        routes::kernel_route(&self.router, prefix).expect("ip route show")
    }

    /// Next hops of the kernel route for `prefix`, sorted.
    pub fn kernel_next_hops(&self, prefix: &str) -> Vec<String> {
        routes::next_hops_of(&self.kernel_route(prefix))
    }

    /// FRR (zebra + bgpd) in the router namespace, files in the lab dir.
    pub fn frr(&self, bgpd_conf: &str) -> Frr {
        Frr::start(&self.router, self.dir.path(), "router", bgpd_conf).expect("FRR starts")
    }

    /// BIRD 2 in the router namespace, files in the lab dir.
    pub fn bird(&self, conf: &str) -> Bird {
        Bird::start(&self.router, self.dir.path(), conf).expect("BIRD starts")
    }

    /// gobgpd in the router namespace, files in the lab dir.
    pub fn gobgp(&self, config_toml: &str) -> GoBgp {
        GoBgp::start(&self.router, self.dir.path(), config_toml).expect("gobgpd starts")
    }
}
