"""Fixtures of the bot tests: the fake Slack Web API and a Slack-configured Steward."""

from tests.bot.slackkit import fake_slack, slack_client, slack_ctx, slack_server

__all__ = ["fake_slack", "slack_client", "slack_ctx", "slack_server"]
