"""The learning curve: how the test metric grows with the number of labelled training rows."""
