"""The library the hirestream services share: mechanisms, never one service's rules."""
