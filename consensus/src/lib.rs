//! EdgeLB consensus: the Raft-replicated backend table.
