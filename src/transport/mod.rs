pub mod driver;
pub mod event_loop;
