//! eventyard sequence tracker (being written).
