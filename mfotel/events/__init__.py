"""Events: Metaflow's event-logger events as span events on the task attempt's span."""
