//! The adsync command line, as a library so its tests can enable `test-hooks`.
