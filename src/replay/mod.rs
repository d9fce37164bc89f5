//! Replay of recorded agent sessions through the folder.
