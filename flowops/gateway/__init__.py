"""The API gateway in front of model servers (`flowops gateway`)."""
