// Tests of the built CLI against fixture fleets.
