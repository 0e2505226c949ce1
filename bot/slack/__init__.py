"""Steward's Slack side: the Web API client, the request guard and the Bolt app."""
