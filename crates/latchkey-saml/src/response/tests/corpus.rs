//! The negative corpus.

use super::*;
