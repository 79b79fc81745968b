//! Every plugin binary connects to the control plane and fails cleanly when it cannot.
