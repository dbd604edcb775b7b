//! EdgeLB node daemon and admin CLI.
