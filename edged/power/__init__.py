"""Power and battery sources -> a PowerSample stream; energy per inference."""
