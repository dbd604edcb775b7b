//! EdgeLB BGP speaker.
