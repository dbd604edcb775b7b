//! EdgeLB network-namespace simulation.
