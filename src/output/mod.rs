//! Files this process writes: temporaries removed on Ctrl-C.

pub mod cleanup;
