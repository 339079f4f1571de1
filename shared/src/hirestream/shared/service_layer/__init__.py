"""The mechanism every service's use cases run on: the unit of work and the errors they raise."""
