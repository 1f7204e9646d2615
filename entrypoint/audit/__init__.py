"""The cluster audit (`verify`): discover members, observe every port and link, judge, report."""
