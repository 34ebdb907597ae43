pub mod gslb;
