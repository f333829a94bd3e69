//! Nothing to see: the `adsync` binary is the product, and this library target
//! exists only because cargo lets a package's tests turn on one of its own
//! features (`test-hooks`, the crash points the SIGKILL tests drive) only
//! through a dev-dependency on the package itself, and a dependency needs a
//! library. It must stay empty, so that nothing here becomes API.
