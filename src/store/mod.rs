//! The local content-addressable store on disk (buildbox-casd's layout).
