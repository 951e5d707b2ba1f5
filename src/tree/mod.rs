//! REAPI Directory trees: built from local directories, walked and validated from the store.
