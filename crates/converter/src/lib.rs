//! eventyard converters (being written).
