//! Property tests.

use super::*;
